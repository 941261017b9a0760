from contextlib import contextmanager
import pytest
from cloud_portal.extensions import db
from cloud_portal.quotas import service as quotas
from tests.test_quota_reservations import test_concurrent_reservations_never_overshoot as t, torfaen  # noqa


@contextmanager
def nolock(tenant_id):
    yield
    db.session.commit()


def test_nolock(app, torfaen, make_user, monkeypatch):
    monkeypatch.setattr(quotas, "serialised_for_tenant", nolock)
    with pytest.raises(AssertionError) as e:
        t(app, torfaen, make_user)
    print("FAILED AS EXPECTED:", str(e.value)[:300])
