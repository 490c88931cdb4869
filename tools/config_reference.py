#!/usr/bin/env python
"""Print the config reference (every key, default and comment) as Markdown.

Core keys come from bridle/config/defaults.py; plugin keys from each loaded plugin's
``add_config`` source (the comment above each assignment).
"""

import sys

from bridle.config.reference import main

if __name__ == "__main__":
    sys.exit(main())
