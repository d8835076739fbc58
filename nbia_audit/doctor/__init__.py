"""The ``doctor`` verb: does the archive still behave as nbia-audit assumes?"""
