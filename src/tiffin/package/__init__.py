"""The package on disk: opening one so that nothing in it is trusted before it is checked."""
