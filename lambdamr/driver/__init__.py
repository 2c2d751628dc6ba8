"""What runs only in the driver: jobs, the scheduler, staging, results, the job store, attach, map_reduce."""
