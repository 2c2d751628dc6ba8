"""Data handles that travel into tasks: ``share()`` handles and ``objects()`` inputs (run remotely too)."""
