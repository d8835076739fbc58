"""The ``verify`` verb: is this folder exactly the locked dataset?"""
