"""Running a package inside its own environment, apart from the host's packages.

``child`` is the entry point that runs in the package's environment; ``run`` starts it
and maps its failures to tiffin errors (one mapping for every caller); ``replay`` and
``predict`` are the two things run there (``tiffin verify`` and ``predict --isolated``).
"""
