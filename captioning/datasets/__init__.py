"""Layer 3, the seminar's data: the formats, their checks and splits
(``formats``); the sources (``seminar``: the 2016 COCO bundle, ``flickr8k``,
``synthetic``: a generated picture world); ``find``: which one to use."""
