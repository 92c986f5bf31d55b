"""Channel providers: one folder per provider, all behind the interfaces in `base`."""
