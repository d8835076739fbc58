"""The demo: the researcher's story, end to end, against the embedded emulator."""
