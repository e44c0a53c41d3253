"""Private plumbing shared by the public modules; not a stable API."""
