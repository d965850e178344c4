"""The console commands (glance-api, glance-registry, glance-manage, ...).

Importing this package comes before any command imports eventlet, which
warns on import that it is in maintenance mode: eight lines on stderr in
front of every start, burying the one-line errors that tell an operator
what to fix. The warning is for developers choosing a framework, not for
operators, so the commands silence it here, once.
"""

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
