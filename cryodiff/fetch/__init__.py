"""``cryodiff fetch``: the one door to the network (EMDB maps, an EMPIAR particle subset, URLs).

:mod:`.registry` lists the known files (URL, SHA-256 where known, what the map is);
:mod:`.download` fetches one file through ``pooch`` (temporary file, hash check, rename) and
decompresses ``.gz``; :mod:`.empiar` fetches the first N particles of an EMPIAR entry and only
the stacks they use. Nothing here is imported at start-up, and nothing else in the package
downloads.
"""
