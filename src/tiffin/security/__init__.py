"""Trust: artifact sniffing, the allow-list unpickler, package signatures."""
