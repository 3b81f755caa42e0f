"""The Flask extensions the app factory wires with `init_app`, shared by every front door."""

from __future__ import annotations

from flask_bootstrap import Bootstrap5
from flask_login import LoginManager
from flask_wtf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
bootstrap = Bootstrap5()
