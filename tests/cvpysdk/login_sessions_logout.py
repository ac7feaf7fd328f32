"""Commvault's own Python SDK (cvpysdk) against radacctd: log in, read the user's console
sessions, log out. Run by tests/it/cvpysdk.rs with RADACCTD_URL, RADACCTD_USER and
RADACCTD_PASSWORD set; exits non-zero (with the reason) when anything is off."""

import os
import sys
import types

from cvpysdk.commcell import Commcell
from cvpysdk.cvpysdk import CVPySDK
from cvpysdk.security.user import User

url = os.environ["RADACCTD_URL"]
user = os.environ["RADACCTD_USER"]
password = os.environ["RADACCTD_PASSWORD"]

# The SDK keeps only the token of the Login answer; keep the rest to check it.
login_json = {}
_make_request = CVPySDK.make_request


def _spy(self, method, request_url, *args, **kwargs):
    flag, response = _make_request(self, method, request_url, *args, **kwargs)
    if method == "POST" and request_url.endswith("/Login") and flag:
        login_json.update(response.json())
    return flag, response


CVPySDK.make_request = _spy

commcell = Commcell("127.0.0.1", user, password, web_service_url=url)
assert commcell.auth_token.startswith("QSDK "), commcell.auth_token
assert login_json["userName"] == user, login_json
user_id = login_json["userId"]

# User.get_sessions is the SDK's own call of GET Session?userId=N (with ONLY-ACTIVE-SESSIONS).
sessions = User.get_sessions(types.SimpleNamespace(_commcell_object=commcell, _user_id=user_id))
mine = [s for s in sessions if s["sessionId"] == login_json["sessionId"]]
assert len(mine) == 1, sessions
assert mine[0]["logoutTime"] == 0, mine
assert mine[0]["user"] == {"userName": user, "userId": user_id}, mine

# The SDK's generic request helper, as scripts use it for calls it has no method for.
flag, response = commcell._cvpysdk_object.make_request("GET", commcell._services["SESSION"] % user_id)
assert flag and response.json()["sessions"], response.text

result = commcell.logout()
assert result is not None
print("cvpysdk: login, sessions and logout OK")
