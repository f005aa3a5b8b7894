"""The only package that imports docker: engine, images, per-trial topology."""
