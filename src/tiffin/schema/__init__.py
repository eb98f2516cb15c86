"""The schema layer: tensor specs, the signature and its enforcement, the typed-JSON codec of
examples, and the users input files read into the signatures dtypes."""
