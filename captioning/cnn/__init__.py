"""Layer 2, photos -> CNN codes: any image file -> RGB (``images``), the
Lasagne EfficientNet-Lite0 (``efficientnet`` with ``depthwise``, weights
read by ``pth``), and ``encode``: the one way photos become codes, through
the code cache (``codes_cache``); ``extract`` writes a folder's codes."""
