//! One case per docs/behaviour.md rule, with certificates made here by rcgen.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use super::*;

const NOW: i64 = 1_800_000_000; // 2027-01-15
const DAY: i64 = 86_400;

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

/// A certificate for `key` valid from NOW-1d until `until`, base64 PEM.
fn cert_for(key: &rcgen::KeyPair, until: i64) -> String {
    let mut p = rcgen::CertificateParams::new(vec!["x".to_string()]).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "stork");
    p.not_before = time::OffsetDateTime::from_unix_timestamp(NOW - DAY).unwrap();
    p.not_after = time::OffsetDateTime::from_unix_timestamp(until).unwrap();
    b64(&p.self_signed(key).unwrap().pem())
}

/// A certificate valid from NOW-1d until `until`, and its key, both base64 PEM.
fn cert(until: i64) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    (cert_for(&key, until), b64(&key.serialize_pem()))
}

/// A user with a client certificate and key.
fn pair_user(cert: &str, key: &str) -> Value {
    json!({"client-certificate-data": cert, "client-key-data": key})
}

/// A user whose client certificate is valid until `until`.
fn cert_user(until: i64) -> Value {
    let (c, k) = cert(until);
    pair_user(&c, &k)
}

fn cp(cluster: Value, user: Value) -> Value {
    json!({
        "apiVersion": "stork.libopenstorage.org/v1alpha1", "kind": "ClusterPair",
        "metadata": {"name": "remote", "namespace": "mig"},
        "spec": {
            "config": {"clusters": {"k": cluster}, "contexts": {"ctx": {"cluster": "k", "user": "u"}}, "users": {"u": user}, "current-context": "ctx"},
            "options": {},
            "platformOptions": {"rancher": {"projectMappings": {"p-a": "p-b"}}}
        }
    })
}

fn good_cluster() -> Value {
    let (ca, _) = cert(NOW + 365 * DAY);
    json!({"server": "https://10.0.0.1:6443", "certificate-authority-data": ca})
}

fn token_user() -> Value {
    json!({"token": "abc.def.ghi-secret-token"})
}

fn report(cluster: Value, user: Value) -> Report {
    check(&cp(cluster, user), NOW, None)
}

fn errors(obj: &Value) -> Vec<String> {
    check(obj, NOW, None)
        .errors
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// A mapping ConfigMap without data.
fn mapping_configmap() -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"rancher-remap.io/mappings": "true"}}})
}

fn has(findings: &[String], needle: &str) -> bool {
    findings.iter().any(|f| f.contains(needle))
}

#[test]
fn valid_token_and_certificate_pairs() {
    assert_eq!(report(good_cluster(), token_user()), Report::default());
    let r = report(good_cluster(), cert_user(NOW + 365 * DAY));
    assert!(r.errors.is_empty() && r.warnings.is_empty(), "{r:?}");
}

#[test]
fn expiring_certificates_are_warned_of() {
    let r = report(good_cluster(), cert_user(NOW + 10 * DAY));
    assert!(r.errors.is_empty());
    assert!(r.warnings[0].message.contains("within 30 days"), "{r:?}");
}

/// A user whose client certificate is another key's.
fn mismatched_user() -> Value {
    let (c, _) = cert(NOW + 365 * DAY);
    let (_, other_key) = cert(NOW + 365 * DAY);
    pair_user(&c, &other_key)
}

fn server(server: &str) -> Value {
    json!({ "server": server })
}

fn ca(ca: &str) -> Value {
    json!({"server": "https://h", "certificate-authority-data": ca})
}

/// Each broken certificate, key, credential or server, and an error that names it.
#[rstest::rstest]
#[case::expired(good_cluster(), cert_user(NOW - DAY), "spec.config.users[u].client-certificate-data: certificate #1 expired")]
#[case::mismatched_key(good_cluster(), mismatched_user(), "client-key-data: does not match")]
#[case::no_key(good_cluster(), json!({"client-certificate-data": cert(NOW + 365 * DAY).0}), "client-key-data: missing")]
#[case::no_certificate(good_cluster(), json!({"client-key-data": cert(NOW + 365 * DAY).1}), "client-certificate-data: missing")]
#[case::ca_not_base64(ca("%%%"), token_user(), "certificate-authority-data: not base64")]
#[case::ca_not_pem(ca(&b64("hello")), token_user(), "not of a PEM X.509 certificate")]
#[case::no_credential(good_cluster(), json!({}), "spec.config.users[u]: no credential")]
#[case::relative_url(server("10.0.0.1:6443"), token_user(), "not an absolute URL")]
#[case::no_host(server("https://"), token_user(), "empty host")]
#[case::not_https(server("ftp://h"), token_user(), "scheme is not https")]
#[case::bad_port(server("https://h:notaport"), token_user(), "invalid port number")]
#[case::insecure_with_ca({let mut c = good_cluster(); c["insecure-skip-tls-verify"] = json!(true); c}, token_user(), "client-go refuses")]
#[case::ca_file(json!({"server": "https://h", "certificate-authority": "/etc/ca.crt"}), json!({"tokenFile": "/var/run/token"}), "certificate-authority: a file path")]
#[case::token_file(json!({"server": "https://h", "certificate-authority": "/etc/ca.crt"}), json!({"tokenFile": "/var/run/token"}), "tokenFile: a file path")]
fn broken_clusters_and_users_are_named(
    #[case] cluster: Value,
    #[case] user: Value,
    #[case] needle: &str,
) {
    let e = errors(&cp(cluster, user));
    assert!(has(&e, needle), "{e:?}");
}

#[test]
fn missing_context_cluster_user() {
    let mut o = cp(good_cluster(), token_user());
    o["spec"]["config"]["current-context"] = json!("");
    assert!(has(&errors(&o), "current-context: missing"));
    o["spec"]["config"]["current-context"] = json!("nope");
    assert!(has(&errors(&o), "names context \"nope\""));
    let mut o = cp(good_cluster(), token_user());
    o["spec"]["config"]["contexts"]["ctx"] = json!({"cluster": "zz", "user": "yy"});
    let e = errors(&o);
    assert!(has(&e, "spec.config.contexts[ctx].cluster"), "{e:?}");
    assert!(has(&e, "spec.config.contexts[ctx].user"), "{e:?}");
}

#[test]
fn insecure_servers_are_warned_of_and_never_quoted() {
    let insecure = json!({"server": "http://10.0.0.1:6443", "insecure-skip-tls-verify": true});
    let r = report(insecure, token_user());
    assert!(r.errors.is_empty(), "{r:?}");
    let warnings = r.warnings.len();
    assert_eq!(warnings, 2, "http and insecure-skip-tls-verify: {r:?}");
    // The URL is never quoted (it may hold user info).
    let with_user_info = json!({"server": "ftp://admin:pw-s3cr3t@h:6443"});
    let e = errors(&cp(with_user_info, token_user()));
    assert!(!format!("{e:?}").contains("s3cr3t"), "{e:?}");
}

#[test]
fn mapping_errors_have_paths_and_all_are_listed() {
    let mut o = cp(good_cluster(), json!({}));
    o["spec"]["platformOptions"]["rancher"]["projectMappings"] =
        json!({"p-a": "p-b", "p-b": "p-c", "P-X": "p-y"});
    let r = check(&o, NOW, None);
    let e: Vec<String> = r.errors.iter().map(ToString::to_string).collect();
    assert!(
        // `P-X` is not made of ID characters: named by its number in the map, not quoted.
        has(&e, "spec.platformOptions.rancher.projectMappings[#1]"),
        "{e:?}"
    );
    assert!(has(&e, "chain"), "{e:?}");
    assert!(has(&e, "no credential"), "{e:?}");
    let denial = r.denial("ClusterPair mig/remote");
    assert!(denial.starts_with("ClusterPair mig/remote is invalid: "));
}

#[test]
fn secrets_never_in_findings() {
    let (c, k) = cert(NOW - DAY);
    let (_, other) = cert(NOW + DAY);
    let mut o = cp(
        json!({"server": "https://h", "certificate-authority-data": "%%%", "insecure-skip-tls-verify": true}),
        json!({"client-certificate-data": c, "client-key-data": other, "token": "tok-secret-123", "password": "pw-secret-456"}),
    );
    o["spec"]["options"] = json!({"weird": "x"});
    let r = check(&o, NOW, None);
    let text = format!("{r:?} {}", r.denial("x"));
    // The middle of each credential, as given (base64) and decoded (the PEM body): their first
    // characters are the PEM header's, which every certificate shares.
    let mut secrets = vec!["tok-secret-123".to_string(), "pw-secret-456".to_string()];
    for b64 in [&c, &k, &other] {
        let pem = String::from_utf8(STANDARD.decode(b64).unwrap()).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        secrets.push(b64[b64.len() / 2..b64.len() / 2 + 24].to_string());
        secrets.push(body[body.len() / 2..body.len() / 2 + 24].to_string());
    }
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "leaked {secret}");
    }
    assert!(!r.errors.is_empty());
}

#[test]
fn an_empty_mapping_configmap_is_refused_and_a_clusterpair_without_mappings_is_not() {
    for data in [json!({}), json!({"ns.a": ""}), json!({"ns.a": "\n  \n"})] {
        let mut cm = mapping_configmap();
        cm["data"] = data.clone();
        let e = errors(&cm);
        assert!(has(&e, "data: no mapping entries"), "{data}: {e:?}");
    }
    assert!(has(&errors(&mapping_configmap()), "no mapping entries"));
    // Stork users without Rancher: no projectMappings at all is fine.
    let mut o = cp(good_cluster(), cert_user(NOW + 365 * DAY));
    for without in [
        json!({}),
        json!({"rancher": {}}),
        json!({"rancher": {"projectMappings": {}}}),
    ] {
        o["spec"]["platformOptions"] = without.clone();
        let r = check(&o, NOW, None);
        assert!(!r.is_denied(), "{without}: {r:?}");
    }
}

#[test]
fn other_objects_are_not_checked_and_configmaps_merge_keys() {
    let plain = json!({"kind": "ConfigMap", "data": {"a": "bad"}});
    assert_eq!(check(&plain, NOW, None), Report::default());
    let mut cm = mapping_configmap();
    cm["data"] = json!({"ns.a": "p-a=p-b", "ns.b": "p-a=p-c"});
    let e = errors(&cm);
    let both = has(&e, "data key ns.a") && has(&e, "data key ns.b");
    assert!(both, "{e:?}");
}

#[test]
fn key_and_certificate_match_for_rsa_ecdsa_and_ed25519() {
    // ring cannot generate RSA keys: two throwaway 2048-bit keys made for these tests only.
    let rsa = |pem| rcgen::KeyPair::from_pem(pem).unwrap();
    let rsa_keys = (
        rsa(include_str!("../../tests/data/test-only-rsa-1.key")),
        rsa(include_str!("../../tests/data/test-only-rsa-2.key")),
    );
    let two = |alg: &'static rcgen::SignatureAlgorithm| {
        let gen = || rcgen::KeyPair::generate_for(alg).unwrap();
        (gen(), gen())
    };
    let cases = [
        ("RSA", rsa_keys),
        ("ECDSA P-256", two(&rcgen::PKCS_ECDSA_P256_SHA256)),
        ("ECDSA P-384", two(&rcgen::PKCS_ECDSA_P384_SHA384)),
        ("Ed25519", two(&rcgen::PKCS_ED25519)),
    ];
    for (alg, (key, other)) in cases {
        let cert = cert_for(&key, NOW + 365 * DAY);
        let good = report(good_cluster(), pair_user(&cert, &b64(&key.serialize_pem())));
        let clean = good.errors.is_empty() && good.warnings.is_empty();
        assert!(clean, "{alg}: {good:?}");
        let other_key = b64(&other.serialize_pem());
        let bad = errors(&cp(good_cluster(), pair_user(&cert, &other_key)));
        let mismatch = has(&bad, "client-key-data: does not match");
        assert!(mismatch, "{alg}: {bad:?}");
    }
}

#[test]
fn names_and_option_keys_that_hold_credentials_are_never_quoted() {
    const MARK: &str = "SeCrEtMaRk";
    let secret = |what: &str| format!("{MARK}{what}0123456789abcdef");
    // A pasted kubeconfig whose names are tokens: a context naming entries that do not exist, and
    // one whose user has an insecure, expired credential; unknown option keys.
    let mut missing = cp(json!({}), json!({}));
    missing["spec"] = json!({
        "config": {"clusters": {}, "contexts": {secret("ctx"): {"cluster": secret("cluster"), "user": secret("user")}}, "users": {}, "current-context": secret("ctx")},
        "options": {secret("option"): "x"},
    });
    let mut named = cp(
        json!({"server": "http://10.0.0.1", "insecure-skip-tls-verify": true}),
        cert_user(NOW - DAY),
    );
    let spec = &mut named["spec"]["config"];
    spec["clusters"] = json!({secret("cluster"): spec["clusters"]["k"].clone()});
    spec["users"] = json!({secret("user"): spec["users"]["u"].clone()});
    spec["contexts"] = json!({"ctx": {"cluster": secret("cluster"), "user": secret("user")}});
    let wrong_context = {
        let mut o = named.clone();
        o["spec"]["config"]["current-context"] = json!(secret("nowhere"));
        o
    };
    for obj in [missing, named, wrong_context] {
        let r = check(&obj, NOW, None);
        assert!(!r.errors.is_empty() || !r.warnings.is_empty(), "{r:?}");
        let all = format!("{r:?}");
        assert!(!all.contains(MARK), "{all}");
        assert!(all.contains("(a name not shown)"), "{all}");
    }
}

/// `good` with `key: value` added at `path` (dot-separated under the object).
fn with_key(path: &str, key: &str) -> Value {
    let mut obj = cp(good_cluster(), token_user());
    let mut at = &mut obj;
    for p in path.split('.') {
        at = &mut at[p];
    }
    at[key] = json!({"p-a": "p-b"});
    obj
}

const RANCHER: &str = "spec.platformOptions.rancher";

#[rstest::rstest]
#[case::spec("spec", "platformOption", Some("platformOptions"))]
#[case::spec_case("spec", "PlatformOptions", Some("platformOptions"))]
#[case::spec_config("spec", "confg", Some("config"))]
#[case::platform("spec.platformOptions", "rancer", Some("rancher"))]
#[case::rancher(RANCHER, "projectMapings", Some("projectMappings"))]
#[case::rancher_lower(RANCHER, "projectmappings", Some("projectMappings"))]
#[case::far("spec", "projectMappings", None)]
#[case::far_platform("spec.platformOptions", "aws", None)]
fn keys_stork_does_not_have_are_refused_with_the_nearest_known_one(
    #[case] at: &str,
    #[case] key: &str,
    #[case] suggestion: Option<&str>,
) {
    let r = check(&with_key(at, key), NOW, None);
    assert_eq!(r.errors.len(), 1, "{r:?}");
    let e = &r.errors[0];
    assert_eq!(e.path, format!("{at}.{key}"));
    assert!(e.message.starts_with("unknown field"), "{e}");
    match suggestion {
        Some(s) => assert!(e.message.ends_with(&format!("did you mean `{s}`?")), "{e}"),
        None => {
            assert!(!e.message.contains("did you mean"), "{e}");
            assert!(e.message.contains(&format!("{at} has only `")), "{e}");
        }
    }
}

#[test]
fn the_known_fields_and_free_form_options_pass() {
    let mut obj = cp(good_cluster(), token_user());
    obj["spec"]["options"] = json!({"projectmappings": "x", "mode": "DisasterRecovery"});
    let r = check(&obj, NOW, None);
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!(r.warnings.len(), 1, "{r:?}");
    assert_eq!(r.warnings[0].path, "spec.options[projectmappings]");
}

#[test]
fn a_misspelt_mapping_is_refused_even_though_no_mappings_remain() {
    // The pair has no projectMappings at all then: without the key check nothing would be
    // refused, and Stork would migrate with no mapping.
    let mut obj = cp(good_cluster(), token_user());
    obj["spec"]["platformOptions"]["rancher"] = json!({"projectMapping": {"p-a": "p-b"}});
    let e = errors(&obj);
    assert_eq!(
        e,
        ["spec.platformOptions.rancher.projectMapping: unknown field (Stork's ClusterPair would store it and ignore it): did you mean `projectMappings`?"]
    );
}

#[test]
fn unknown_keys_that_do_not_read_as_field_names_are_not_quoted() {
    const MARK: &str = "SeCrEt0MaRk9";
    let r = check(&with_key("spec", &format!("{MARK}0123456789")), NOW, None);
    let all = format!("{r:?}");
    assert!(!all.contains(MARK), "{all}");
    assert_eq!(r.errors[0].path, "spec.(a key not shown)");
}
