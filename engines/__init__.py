"""llasa_rt.engines: writing engine bundles (atomically) and backend-specific plans."""
