"""broker.policy: identities from certificates, connect/publish/subscribe decisions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st

from broker import policy
from certs import pki
from schemas.ids import Identity, Role, make_vin
from schemas.topics import MqttTopics, topic_matches

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, tzinfo=UTC)
VIN = make_vin(1)
OTHER_VIN = make_vin(2)
CMD = "0b0e7f6e-6f5c-4d6e-9c1e-6a1f2b3c4d5e"
VEHICLE = Identity(role=Role.VEHICLE, id=VIN)
APP = Identity(role=Role.APP, id="companion")
OTHER_APP = Identity(role=Role.APP, id="intruder")
SERVICE = Identity(role=Role.SERVICE, id="gateway")


@pytest.fixture(scope="module")
def issuing() -> pki.Issued:
    root = pki.create_root_ca(validity=pki.Validity.starting(NOW, pki.Lifetimes().root))
    return pki.create_issuing_ca(root, validity=pki.Validity.starting(NOW, pki.Lifetimes().issuing))


def _leaf(
    ca: pki.Issued, name: x509.Name, *, eku: list[x509.ObjectIdentifier] | None = None
) -> x509.Certificate:
    key = pki.new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW.replace(year=2027))
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


# --- identity --------------------------------------------------------------------------------


@pytest.mark.parametrize("identity", [VEHICLE, APP, SERVICE])
def test_identity_of_issued_leaf(issuing: pki.Issued, identity: Identity) -> None:
    leaf = pki.issue_leaf(
        issuing, identity, validity=pki.Validity.starting(NOW, pki.Lifetimes().leaf)
    )
    assert policy.identity_from_certificate(leaf.cert) == identity


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (_name((NameOID.COMMON_NAME, VIN)), "0 OU attributes"),
        (_name((NameOID.ORGANIZATIONAL_UNIT_NAME, "vehicles")), "0 CN attributes"),
        (
            _name(
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "vehicles"),
                (NameOID.COMMON_NAME, VIN),
                (NameOID.COMMON_NAME, OTHER_VIN),
            ),
            "2 CN attributes",
        ),
        (
            _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "broker"), (NameOID.COMMON_NAME, "x")),
            "unknown OU 'broker'",
        ),
        (
            _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "Vehicles"), (NameOID.COMMON_NAME, VIN)),
            "unknown OU",
        ),
        (
            _name(
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "vehicles"),
                (NameOID.COMMON_NAME, "1HGCM82633A00435O"),
            ),
            "illegal character 'O' at position 17",
        ),
        (
            _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "vehicles"), (NameOID.COMMON_NAME, "SHORT")),
            "has 5 characters",
        ),
        (
            _name(
                (NameOID.ORGANIZATIONAL_UNIT_NAME, "vehicles"), (NameOID.COMMON_NAME, VIN + "/#")
            ),
            "characters",
        ),
        (
            _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "apps"), (NameOID.COMMON_NAME, "a/b")),
            "app id 'a/b' is not valid",
        ),
        (
            _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "apps"), (NameOID.COMMON_NAME, VIN)),
            "is a valid VIN",
        ),
        (
            _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "services"), (NameOID.COMMON_NAME, VIN)),
            "is a valid VIN",
        ),
        (
            _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "services"), (NameOID.COMMON_NAME, "+")),
            "service name '+'",
        ),
    ],
)
def test_identity_refusals(name: x509.Name, reason: str) -> None:
    with pytest.raises(policy.IdentityError, match=reason.replace("(", r"\(").replace("+", r"\+")):
        policy.identity_from_subject(name)


def test_ca_and_server_certificates_are_no_identity(issuing: pki.Issued) -> None:
    with pytest.raises(policy.IdentityError, match="CA certificate"):
        policy.identity_from_certificate(issuing.cert)
    server = pki.issue_server(issuing, validity=pki.Validity.starting(NOW, pki.Lifetimes().server))
    with pytest.raises(policy.IdentityError, match="clientAuth"):
        policy.identity_from_certificate(server.cert)
    with pytest.raises(policy.IdentityError, match="unknown OU 'broker'"):
        policy.identity_from_subject(server.cert.subject)


def test_certificate_without_client_auth_is_refused(issuing: pki.Issued) -> None:
    name = _name((NameOID.ORGANIZATIONAL_UNIT_NAME, "vehicles"), (NameOID.COMMON_NAME, VIN))
    cert = _leaf(issuing, name, eku=[ExtendedKeyUsageOID.SERVER_AUTH])
    with pytest.raises(policy.IdentityError, match="clientAuth"):
        policy.identity_from_certificate(cert)
    assert policy.identity_from_certificate(_leaf(issuing, name)) == VEHICLE


# --- connect ---------------------------------------------------------------------------------


def test_connect_client_id_must_be_cn() -> None:
    assert policy.may_connect(VEHICLE, VIN)
    refused = policy.may_connect(VEHICLE, OTHER_VIN)
    assert not refused
    assert "differs from the certificate CN" in refused.reason
    assert not policy.may_connect(VEHICLE, "")
    assert policy.may_connect(APP, "companion")
    assert not policy.may_connect(APP, "companion2")


def test_connect_services_any_client_id_but_a_vin_or_someone_elses_session() -> None:
    assert policy.may_connect(SERVICE, "gateway-uplink-1")
    assert policy.may_connect(SERVICE, "")
    assert not policy.may_connect(SERVICE, VIN)
    assert policy.may_connect(SERVICE, "x", holder=SERVICE)
    taken = policy.may_connect(SERVICE, "companion", holder=APP)
    assert not taken
    assert "app:companion" in taken.reason
    assert not policy.may_connect(APP, "companion", holder=SERVICE)


# --- publish / receive / subscribe -----------------------------------------------------------

VEHICLE_UPLINK = [
    MqttTopics.connection(VIN),
    MqttTopics.telemetry(VIN),
    MqttTopics.shadow_reported(VIN),
    MqttTopics.command_result(VIN, CMD),
    MqttTopics.ota_status(VIN),
    MqttTopics.ota_chunk_request(VIN),
]
VEHICLE_DOWNLINK = [
    MqttTopics.command(VIN, CMD),
    MqttTopics.shadow_desired(VIN),
    MqttTopics.ota_jobs(VIN),
    MqttTopics.ota_chunk(VIN, "job-1", 0),
    MqttTopics.errors(VIN),
]


@pytest.mark.parametrize("topic", VEHICLE_UPLINK)
def test_vehicle_publishes_its_uplink_only(topic: str) -> None:
    assert policy.may_publish(VEHICLE, topic)
    assert not policy.may_receive(VEHICLE, topic)
    other = topic.replace(VIN, OTHER_VIN)
    denied = policy.may_publish(VEHICLE, other)
    assert not denied
    assert f"vehicles/{OTHER_VIN}/" in denied.reason


@pytest.mark.parametrize("topic", VEHICLE_DOWNLINK)
def test_vehicle_receives_its_downlink_only(topic: str) -> None:
    assert policy.may_receive(VEHICLE, topic)
    assert policy.may_subscribe(VEHICLE, topic)
    denied = policy.may_publish(VEHICLE, topic)
    assert not denied
    assert "cloud sends" in denied.reason
    assert not policy.may_receive(VEHICLE, topic.replace(VIN, OTHER_VIN))


def test_vehicle_subscriptions_of_the_schema_are_granted() -> None:
    for topic_filter in MqttTopics.vehicle_subscriptions(VIN):
        assert policy.may_subscribe(VEHICLE, topic_filter), topic_filter


@pytest.mark.parametrize(
    "topic_filter",
    [
        "#",
        "+",
        "+/+/telemetry",
        "vehicles/#",
        "vehicles/+/commands/+",
        f"vehicles/{OTHER_VIN}/commands/+",
        f"vehicles/{VIN}/#",
        f"vehicles/{VIN}/+",
        f"vehicles/{VIN}/commands/#",
        f"vehicles/{VIN}/ota/chunks/#",
        f"vehicles/{VIN}/ota/+",
        f"vehicles/{VIN}/telemetry",
        "$SYS/#",
        f"$share/g/vehicles/{VIN}/commands/+",
        "apps/companion/#",
        "vehicles/+",
        "a/#/b",
        "",
    ],
)
def test_vehicle_subscription_refusals(topic_filter: str) -> None:
    assert not policy.may_subscribe(VEHICLE, topic_filter)


@pytest.mark.parametrize(
    ("topic_filter", "allowed"),
    [
        (f"vehicles/{VIN}/ota/chunks/+/+", True),
        (f"vehicles/{VIN}/ota/chunks/job-1/+", True),
        (f"vehicles/{VIN}/ota/chunks/job-1/7", True),
        # '#' also matches the parent level ota/chunks/job-1, which is no chunk topic
        (f"vehicles/{VIN}/ota/chunks/job-1/#", False),
        # ... and ota/chunks/# covers ota/chunks/request, the vehicle's own uplink
        (f"vehicles/{VIN}/ota/chunks/#", False),
    ],
)
def test_vehicle_chunk_filters(topic_filter: str, allowed: bool) -> None:
    assert policy.may_subscribe(VEHICLE, topic_filter).allowed is allowed


def test_app_topics() -> None:
    assert policy.may_publish(APP, MqttTopics.app_commands("companion"))
    assert policy.may_publish(APP, MqttTopics.app_shadow_desired("companion", VIN))
    assert not policy.may_publish(APP, MqttTopics.app_commands("intruder"))
    assert not policy.may_publish(APP, MqttTopics.app_command_status("companion", CMD))
    assert not policy.may_publish(APP, MqttTopics.command(VIN, CMD))
    assert not policy.may_publish(APP, MqttTopics.telemetry(VIN))
    assert policy.may_subscribe(APP, "apps/companion/#")
    assert policy.may_subscribe(APP, "apps/companion/commands/+/status")
    assert policy.may_receive(APP, MqttTopics.app_shadow("companion", VIN))
    for topic_filter in (
        "apps/#",
        "apps/+/commands/+/status",
        "apps/intruder/#",
        "#",
        f"vehicles/{VIN}/commands/+",
    ):
        assert not policy.may_subscribe(APP, topic_filter), topic_filter
    assert not policy.may_receive(OTHER_APP, MqttTopics.app_shadow("companion", VIN))


def test_services_everything_but_dollar_topics() -> None:
    for topic in [
        *VEHICLE_UPLINK,
        *VEHICLE_DOWNLINK,
        MqttTopics.app_commands("companion"),
        "any/thing",
    ]:
        assert policy.may_publish(SERVICE, topic)
        assert policy.may_receive(SERVICE, topic)
    for topic_filter in (
        "#",
        "vehicles/+/telemetry",
        "$SYS/#",
        "$SYS",
        "$share/gw/vehicles/+/telemetry",
    ):
        assert policy.may_subscribe(SERVICE, topic_filter), topic_filter
    assert not policy.may_subscribe(SERVICE, "$CONTROL/dynamic-security/#")
    assert not policy.may_publish(SERVICE, "$SYS/broker/uptime")
    assert policy.may_receive(SERVICE, "$SYS/broker/uptime")
    assert not policy.may_receive(SERVICE, "$CONTROL/x")


@pytest.mark.parametrize("topic", ["", "a/+/b", "a/#", "a\0b", "x" * 70_000])
def test_invalid_topics(topic: str) -> None:
    for identity in (VEHICLE, APP, SERVICE):
        assert not policy.may_publish(identity, topic)
        assert not policy.may_receive(identity, topic)


def test_decision_is_truthy_and_has_reason() -> None:
    decision = policy.may_publish(VEHICLE, MqttTopics.telemetry(VIN))
    assert decision.allowed is True
    assert bool(decision)
    assert decision.reason


# --- filter containment ----------------------------------------------------------------------

LEVELS = st.sampled_from(["a", "b", "", "+", "$SYS"])
FILTER_LEVELS = st.sampled_from(["a", "b", "", "+", "#", "$SYS"])


def _filters() -> st.SearchStrategy[str]:
    return (
        st.lists(FILTER_LEVELS, min_size=1, max_size=4)
        .map(
            lambda levels: "/".join(
                lv for i, lv in enumerate(levels) if lv != "#" or i == len(levels) - 1
            )
        )
        .filter(bool)
    )


@given(
    _filters(),
    _filters(),
    st.lists(st.sampled_from(["a", "b", "", "$SYS"]), min_size=1, max_size=5),
)
def test_filter_within_is_sound(inner: str, outer: str, topic_levels: list[str]) -> None:
    topic = "/".join(topic_levels)
    if inner.startswith(("+", "#")) or outer.startswith(("+", "#")):
        topic = topic.lstrip("$")
    if policy.filter_within(inner, outer) and topic_matches(inner, topic):
        assert topic_matches(outer, topic)


@pytest.mark.parametrize(
    ("inner", "outer", "within"),
    [
        ("a/b", "a/+", True),
        ("a/+", "a/b", False),
        ("a", "a/#", True),
        ("a/#", "a/+", False),
        ("a/+/c", "a/#", True),
        ("#", "#", True),
        ("a/b/c", "a/+", False),
        ("a/+/+", "a/+/+", True),
    ],
)
def test_filter_within_cases(inner: str, outer: str, within: bool) -> None:
    assert policy.filter_within(inner, outer) is within
