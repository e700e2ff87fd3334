// testing helpers
