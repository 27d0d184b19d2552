"""The engine from Python: documents of every kind, the three document types, errors."""

import json

import oneseal
import pytest
from conftest import fixtures, leaves, load, without_bookkeeping


def test_every_fixture_round_trips(local_key):
    eng = oneseal.Engine(local_key=local_key)
    docs = fixtures("one-api") + fixtures("legacy")
    assert len(docs) > 10
    for p in docs:
        plain = load(p)
        sealed = eng.encrypt(plain)
        if leaves(plain):
            assert sealed != plain, p
        back = eng.decrypt(sealed)
        assert without_bookkeeping(back, plain) == plain, p


def test_bytes_in_bytes_out_is_the_compact_document_with_key_order_kept(local_key):
    eng = oneseal.Engine(local_key=local_key)
    doc = b'{"messages": [{"to": "2799900001", "channel": "whatsapp", "content": "hi"}]}'
    out = eng.encrypt(doc)
    assert isinstance(out, bytes)
    assert out.startswith(b'{"messages":[{"to":"2799900001","channel":"whatsapp","content":"')
    # The whole value: the bare letters "hi" may well occur inside random base64 (a test
    # that looked for them would fail about one run in a hundred).
    assert json.loads(out)["messages"][0]["content"] != "hi"


def test_str_in_str_out_and_dict_in_dict_out(local_key):
    eng = oneseal.Engine(local_key=local_key)
    doc = {"messages": [{"channel": "whatsapp", "to": "2799900001", "content": "hi"}]}
    s = eng.encrypt(json.dumps(doc))
    assert isinstance(s, str)
    d = eng.encrypt(doc)
    assert isinstance(d, dict) and d["messages"][0]["encryptionKey"]
    assert json.loads(eng.decrypt(s))["messages"][0]["content"] == "hi"


def test_bad_input_names_the_json_path(local_key):
    eng = oneseal.Engine(local_key=local_key)
    with pytest.raises(oneseal.BadInputError) as e:
        eng.encrypt({"messages": [{"channel": "whatsapp", "to": "1", "content": 5}]})
    assert e.value.path == "messages[0].content"
    assert isinstance(e.value, oneseal.Error)


def test_a_bad_setting_is_a_usage_error(local_key):
    with pytest.raises(oneseal.UsageError, match="suite"):
        oneseal.Engine(local_key=local_key, suite="ccm")
    with pytest.raises(oneseal.UsageError, match="kms_key_id is empty"):
        oneseal.Engine(local_key=local_key, kms_key_id=" ")


def test_tampered_ciphertext_is_a_crypto_error_that_leaks_nothing(local_key):
    eng = oneseal.Engine(local_key=local_key)
    sealed = eng.encrypt({"messages": [{"channel": "whatsapp", "to": "1", "content": "secret words"}]})
    c = sealed["messages"][0]["content"]
    sealed["messages"][0]["content"] = c[:-4] + ("AAAA" if not c.endswith("AAAA") else "BBBB")
    with pytest.raises(oneseal.CryptoError) as e:
        eng.decrypt(sealed)
    assert "secret" not in str(e.value)


def test_keep_going_leaves_a_bad_item_and_reports_it(local_key):
    eng = oneseal.Engine(local_key=local_key)
    sealed = eng.encrypt({"messages": [
        {"channel": "whatsapp", "to": "1", "content": "a"},
        {"channel": "whatsapp", "to": "2", "content": "b"},
    ]})
    sealed["messages"][1]["content"] = "AAAA" + sealed["messages"][1]["content"][4:]
    doc, failures = eng.decrypt_report(sealed, keep_going=True)
    assert doc["messages"][0]["content"] == "a"
    assert len(failures) == 1 and failures[0][0].startswith("messages[1]")


def test_strict_mode_refuses_an_unknown_member(local_key):
    eng = oneseal.Engine(local_key=local_key, strict=True)
    with pytest.raises(oneseal.BadInputError) as e:
        eng.encrypt({"messages": [{"channel": "whatsapp", "to": "1", "content": "a", "note": "x"}]})
    assert e.value.path == "messages[0].note"


def test_a_missing_kms_key_is_a_key_service_error(moto):
    eng = oneseal.Engine(kms_key_id="alias/does-not-exist", endpoint_url=moto["url"])
    with pytest.raises(oneseal.KeyServiceError):
        eng.encrypt({"messages": [{"channel": "whatsapp", "to": "1", "content": "a"}]})
