"""Request and response models (camelCase on the wire, as in the seed API document)."""
