"""Data handles that travel into tasks: ``share()`` handles, ``objects()`` inputs, and
``task_storage()`` with the references tasks return (run remotely too)."""
