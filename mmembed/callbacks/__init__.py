"""Lightning callbacks of mmembed (configured in ``conf/callbacks/``)."""
