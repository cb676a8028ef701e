"""The demo and the data it streams: synthetic and real OpenSky Silver, and `goldstream demo`.

Nothing in the pipeline imports this package; it is a user of the pipeline like any other."""
