"""``tiffin serve``: an Open Inference Protocol (KServe V2) server for packages."""
