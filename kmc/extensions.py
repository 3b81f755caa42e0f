"""The Flask extensions the app factory wires with `init_app`, shared by every front door."""

from __future__ import annotations

from flask_bootstrap import Bootstrap5
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
# Rate limits only where a route declares one (`@limiter.limit`); counters in the storage of
# KMC_RATELIMIT_STORAGE_URI (kmc.config).
limiter = Limiter(key_func=get_remote_address)
login_manager = LoginManager()
bootstrap = Bootstrap5()
