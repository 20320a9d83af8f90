//! Validation of server messages against the vendored Codex 0.169 JSON Schemas.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use quest_protocol::app_server::jsonrpc::RequestId;
use serde_json::{Value, json};

/// The response schema (a definition of the v2 bundle, or `InitializeResponse`) of each method
/// Quest answers. `None`: a Quest extension method without a Codex schema.
pub fn response_schema(method: &str) -> Option<&'static str> {
    Some(match method {
        "initialize" => "InitializeResponse",
        "account/read" => "GetAccountResponse",
        "account/rateLimits/read" => "GetAccountRateLimitsResponse",
        "model/list" => "ModelListResponse",
        "config/read" => "ConfigReadResponse",
        "configRequirements/read" => "ConfigRequirementsReadResponse",
        "collaborationMode/list" => "CollaborationModeListResponse",
        "hooks/list" => "HooksListResponse",
        "skills/list" => "SkillsListResponse",
        "plugin/installed" => "PluginInstalledResponse",
        "account/bedrock/checkGovCloudRequirements" => "BedrockCheckGovCloudRequirementsResponse",
        "thread/start" => "ThreadStartResponse",
        "thread/resume" => "ThreadResumeResponse",
        "thread/read" => "ThreadReadResponse",
        "thread/list" => "ThreadListResponse",
        "thread/loaded/list" => "ThreadLoadedListResponse",
        "thread/turns/list" => "ThreadTurnsListResponse",
        "thread/items/list" => "ThreadItemsListResponse",
        "thread/readState/update" => "ThreadReadStateUpdateResponse",
        "thread/unsubscribe" => "ThreadUnsubscribeResponse",
        "turn/start" => "TurnStartResponse",
        "turn/interrupt" => "TurnInterruptResponse",
        "thread/compact/start" => "ThreadCompactStartResponse",
        "thread/goal/get" => "ThreadGoalGetResponse",
        "thread/goal/set" => "ThreadGoalSetResponse",
        "thread/goal/clear" => "ThreadGoalClearResponse",
        _ => return None,
    })
}

/// Methods Quest adds; their results are checked by the tests that call them.
pub const EXTENSION_METHODS: &[&str] = &["thread/goal/log", "thread/goal/history"];

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schema")
}

fn load(name: &str) -> Value {
    let path = schema_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("bad JSON in {}: {e}", path.display()))
}

/// The schemas, compiled on demand and cached.
pub struct Schemas {
    definitions: Value,
    notification_params: HashMap<String, String>,
    standalone: HashMap<&'static str, Value>,
    cache: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

impl Schemas {
    pub fn get() -> &'static Schemas {
        static SCHEMAS: OnceLock<Schemas> = OnceLock::new();
        SCHEMAS.get_or_init(Schemas::load)
    }

    fn load() -> Schemas {
        let bundle = load("codex_app_server_protocol.v2.schemas.json");
        let definitions = bundle["definitions"].clone();
        let mut notification_params = HashMap::new();
        for variant in definitions["ServerNotification"]["oneOf"]
            .as_array()
            .unwrap()
        {
            let method = variant["properties"]["method"]["enum"][0]
                .as_str()
                .unwrap()
                .to_string();
            let params = variant["properties"]["params"]["$ref"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string();
            notification_params.insert(method, params);
        }
        let mut standalone = HashMap::new();
        standalone.insert("InitializeResponse", load("InitializeResponse.json"));
        standalone.insert("JSONRPCError", load("JSONRPCError.json"));
        for name in [
            "ServerRequest",
            "CommandExecutionRequestApprovalResponse",
            "FileChangeRequestApprovalResponse",
            "McpServerElicitationRequestResponse",
        ] {
            standalone.insert(name, load(&format!("{name}.json")));
        }
        Schemas {
            definitions,
            notification_params,
            standalone,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn validator(&self, name: &str) -> Arc<jsonschema::Validator> {
        if let Some(v) = self.cache.lock().unwrap().get(name) {
            return v.clone();
        }
        let schema = match self.standalone.get(name) {
            Some(schema) => schema.clone(),
            None => {
                assert!(
                    self.definitions.get(name).is_some(),
                    "no definition {name} in the Codex schema bundle"
                );
                json!({
                    "$schema": "http://json-schema.org/draft-07/schema#",
                    "$ref": format!("#/definitions/{name}"),
                    "definitions": self.definitions,
                })
            }
        };
        let validator = Arc::new(
            jsonschema::draft7::new(&schema)
                .unwrap_or_else(|e| panic!("schema {name} does not compile: {e}")),
        );
        self.cache
            .lock()
            .unwrap()
            .insert(name.to_string(), validator.clone());
        validator
    }

    /// Validates `value` against the named schema; the error lists every violation.
    pub fn check(&self, name: &str, value: &Value) -> Result<(), String> {
        let validator = self.validator(name);
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{name}: {}", errors.join("; ")))
        }
    }

    /// Validates one message the server sent. `methods` maps request ids to the method asked.
    pub fn check_server_message(
        &self,
        message: &Value,
        methods: &HashMap<RequestId, String>,
    ) -> Result<(), String> {
        let object = message
            .as_object()
            .ok_or("a server message must be a JSON object")?;
        if object.contains_key("jsonrpc") {
            return Err("the wire omits the `jsonrpc` member".into());
        }
        if let Some(method) = object.get("method").and_then(Value::as_str) {
            if object.contains_key("id") {
                // A server→client request: the whole message against Codex's `ServerRequest`.
                return self.check("ServerRequest", message);
            }
            let params_schema = self
                .notification_params
                .get(method)
                .ok_or_else(|| format!("`{method}` is not a Codex server notification"))?;
            if !object.get("emittedAtMs").is_some_and(Value::is_i64) {
                return Err(format!(
                    "notification {method} lacks an integer emittedAtMs"
                ));
            }
            return self.check(params_schema, &object["params"]);
        }
        let id = object.get("id").ok_or("a response needs an id")?;
        if let Some(error) = object.get("error") {
            if id.is_null() {
                // The request's id could not be read (JSON-RPC 2.0 answers with a null id); only
                // the error object can be checked.
                return self.check_error_object(error);
            }
            return self.check("JSONRPCError", message);
        }
        let result = object
            .get("result")
            .ok_or("a response needs `result` or `error`")?;
        let request_id: RequestId = serde_json::from_value(id.clone())
            .map_err(|_| format!("response id {id} is neither a string nor an integer"))?;
        let method = methods
            .get(&request_id)
            .ok_or_else(|| format!("response to unknown request id {id}"))?;
        match response_schema(method) {
            Some(schema) => self.check(schema, result),
            None if EXTENSION_METHODS.contains(&method.as_str()) => Ok(()),
            None => Err(format!("no Codex response schema known for {method}")),
        }
    }

    fn check_error_object(&self, error: &Value) -> Result<(), String> {
        let code_ok = error.get("code").is_some_and(Value::is_i64);
        let message_ok = error.get("message").is_some_and(Value::is_string);
        if code_ok && message_ok {
            Ok(())
        } else {
            Err(format!("malformed error object {error}"))
        }
    }
}
