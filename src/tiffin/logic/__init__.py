"""The logic layer (a package's ``code/``): the user's modules copied in, imported back out.

``sources`` finds the modules a class file needs and copies them into ``code/``;
``namespace`` imports ``code/`` as a namespace of its own, so a package's modules never
mix with the packer's working copy or with another package's modules of the same name.
"""
