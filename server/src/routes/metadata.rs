//! The CapabilityStatement (SRV-205..213, E-06).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::app::AppState;
use crate::export::type_filter::{ParamKind, params_for};

const BULK: &str = "http://hl7.org/fhir/uv/bulkdata";

fn expectation() -> Value {
    json!([{"url": "http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation", "valueCode": "SHOULD"}])
}

/// An operation declared under its current name and its older alias (E-06).
fn operations(definition: &str, old_name: Option<&str>) -> Value {
    let definition = format!("{BULK}/OperationDefinition/{definition}");
    let mut ops = vec![json!({"extension": expectation(), "name": "export", "definition": definition})];
    if let Some(old) = old_name {
        ops.push(json!({"extension": expectation(), "name": old, "definition": definition}));
    }
    Value::Array(ops)
}

/// The security element: SMART on FHIR with the deprecated `oauth-uris` extension (E-30).
fn security(state: &AppState) -> Value {
    if state.auth.is_none() {
        return json!({"description": "open access: this server runs without authorization"});
    }
    json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "token", "valueUri": state.token_url()},
                {"url": "register", "valueUri": format!("{}/auth/register", state.origin())},
            ],
        }],
        "service": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
        }]}],
        "description": "SMART Backend Services: see .well-known/smart-configuration",
    })
}

/// Builds the CapabilityStatement for this server.
pub fn build(state: &AppState) -> Value {
    let kind_name = |k: ParamKind| match k {
        ParamKind::Token => "token",
        ParamKind::Date => "date",
        ParamKind::Reference => "reference",
        ParamKind::String => "string",
    };
    let resources: Vec<Value> = state
        .source
        .types()
        .iter()
        .map(|t| {
            let params: Vec<Value> =
                params_for(&t.name).map(|(n, k)| json!({"name": n, "type": kind_name(k)})).collect();
            let mut r = json!({"type": t.name, "searchParam": params});
            match t.name.as_str() {
                "Patient" => r["operation"] = operations("patient-export", Some("patient-export")),
                "Group" => {
                    r["operation"] = operations("group-export", Some("group-export"));
                    r["interaction"] = json!([{"code": "read"}, {"code": "search-type"}, {"code": "create"}]);
                }
                _ => {}
            }
            r
        })
        .collect();
    let date = crate::data::clock::instant_string(crate::export::job::unix_now());
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": date,
        "publisher": "bulkmock",
        "kind": "instance",
        "instantiates": [format!("{BULK}/CapabilityStatement/bulk-data")],
        "software": {"name": "bulkmock", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "bulkmock: a mock FHIR Bulk Data Access server for testing clients",
            "url": state.fhir_base,
        },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": security(state),
            "documentation": "Bulk Data export at system, Patient and Group level. Patient and Group exports \
                hold Patient-compartment resources only; Practitioner, Organization, Location and Group are \
                exported at system level. _since is exclusive and _until inclusive. _since does not add \
                older resources of new group members. includeAssociatedData supports \
                LatestProvenanceResources and RelevantProvenanceResources. Files hold at most the \
                configured number of resources; output is NDJSON only.",
            "resource": resources,
            "operation": operations("export", None),
        }],
    })
}

/// `GET [base]/metadata`.
pub async fn capability_statement(State(state): State<Arc<AppState>>) -> Response {
    let mut response = axum::Json(build(&state)).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(bulkmock_wire::FHIR_JSON));
    response
}
