"""The lock's two files and the local state: text lock, lock database, one reader."""
