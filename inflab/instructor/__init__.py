"""Instructor mode: read a room of participants' sessions, preflight their accounts, clean up after them.

``roster`` (the room, validated), ``records`` (what the rest passes around), ``room`` (one refresh of
every participant, by their beacons and tags), ``preflight``, ``cleanup`` and ``demo`` (a sandbox room).
Importing this package loads nothing heavy: each module imports boto3 only where it calls AWS.
"""
