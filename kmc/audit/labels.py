"""What people read for an audit action: one label per action name, in one place. Pages show the
label with the raw action beside it (the log, its exports and its filters keep the raw name)."""

from __future__ import annotations

ACTION_LABELS = {
    "api_token.create": "API token created",
    "api_token.failure": "API token refused (bad token from an address)",
    "api_token.revoke": "API token revoked",
    "custodians.seal": "Key store sealed",
    "custodians.share": "Master-key share entered",
    "custodians.share.refuse": "Master-key share refused",
    "custodians.split": "Master key split into shares",
    "custodians.unseal": "Key store unsealed",
    "key.authorisation.revoke": "Key authorisation revoked",
    "key.authorize": "Key authorised for an SM",
    "key.authorize.approve": "Key authorisation approved",
    "key.authorize.propose": "Key authorisation proposed",
    "key.authorize.reject": "Key authorisation rejected",
    "key.compromise": "Key marked compromised",
    "key.deactivate": "Key deactivated",
    "key.generate": "Key generated",
    "key.generate.approve": "Key generation approved",
    "key.generate.propose": "Key generation proposed",
    "key.generate.reject": "Key generation rejected",
    "key.rewrap": "Keys re-wrapped under a new storage key",
    "keyload.fetch": "Key-load file fetched again",
    "keyload.issue": "Key-load file issued",
    "keyload.refuse": "Key-load request refused",
    "keystore.fault": "Key store fault",
    "keystore.import": "Keys imported into the key store",
    "keystore.migrate": "Key store migrated",
    "keystore.storage_key": "Storage key created",
    "kmc.backup": "KMC backed up",
    "kmc.restore": "KMC restored",
    "login.failure": "Login refused (wrong password from an address)",
    "login.refused": "Login refused",
    "login.success": "Logged in",
    "logout": "Logged out",
    "manufacturer.create": "Manufacturer created",
    "manufacturer.update": "Manufacturer edited",
    "pki.create": "KMC certificates created",
    "pki.reissue": "KMC certificates reissued",
    "sgc.add": "Supply group added",
    "sgc.update": "Supply group edited",
    "sm.approve": "SM approved",
    "sm.export": "SM registry exported (signed)",
    "sm.online_keyload": "SM online key loading switched",
    "sm.register": "SM registered",
    "sm.register.refused": "SM registration refused (key already used)",
    "sm.resume": "SM resumed",
    "sm.revoke": "SM revoked",
    "sm.suspend": "SM suspended",
    "user.create": "Account created",
    "user.disable": "Account disabled",
    "user.enable": "Account enabled",
    "user.password_change": "Password changed",
    "user.unlock": "Account unlocked",
}


def action_label(action: str) -> str:
    """The label of `action`, or the action itself when it has none."""
    return ACTION_LABELS.get(action, action)
