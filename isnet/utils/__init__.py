"""Small helpers shared by the package (file I/O)."""
