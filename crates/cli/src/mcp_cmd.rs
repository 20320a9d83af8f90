//! `quest mcp list|get|add|remove`: manage `[mcp_servers]` in `$QUEST_HOME/config.toml`, as
//! `codex mcp` does. Edits keep the file's comments, order and formatting (`toml_edit`), are
//! checked before anything is written, and replace the file atomically.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use quest_core::{ConfigOverrides, load_config};
use quest_mcp::{McpServerConfig, McpServerTransportConfig, McpServers};
use serde_json::{Value, json};
use toml_edit::{Array, DocumentMut, InlineTable, Item, Table, value};

/// `quest mcp` arguments.
#[derive(Args, Debug)]
pub(crate) struct McpArgs {
    #[command(subcommand)]
    command: McpCommand,
    /// Override a config key: `-c key=value` (for `list` and `get`).
    #[arg(short = 'c', long = "config", global = true, value_name = "KEY=VALUE")]
    config: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum McpCommand {
    /// List the configured servers.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one server.
    Get {
        /// Server name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add (or replace) a server: `quest mcp add NAME -- COMMAND [ARGS]...` for a stdio server,
    /// `quest mcp add NAME --url URL` for a streamable-HTTP one.
    Add(AddArgs),
    /// Remove a server.
    Remove {
        /// Server name.
        name: String,
    },
}

#[derive(Args, Debug)]
struct AddArgs {
    /// Server name (letters, digits, `_`, `-`).
    name: String,
    /// Streamable-HTTP endpoint.
    #[arg(long, conflicts_with_all = ["env", "command"])]
    url: Option<String>,
    /// Environment variable holding a bearer token (with `--url`).
    #[arg(long, requires = "url")]
    bearer_token_env_var: Option<String>,
    /// HTTP header sent on every request (with `--url`), repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE", requires = "url")]
    headers: Vec<String>,
    /// Variable set for a stdio server, repeatable.
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// `startup_timeout_sec`.
    #[arg(long, value_name = "SECONDS")]
    startup_timeout_sec: Option<f64>,
    /// `tool_timeout_sec`.
    #[arg(long, value_name = "SECONDS")]
    tool_timeout_sec: Option<f64>,
    /// The stdio server's command and its arguments (after `--`).
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Runs `quest mcp`; returns the exit code.
pub(crate) fn run(args: McpArgs) -> i32 {
    let result = match args.command {
        McpCommand::List { json } => list(&args.config, json),
        McpCommand::Get { name, json } => get(&args.config, &name, json),
        McpCommand::Add(add_args) => add(add_args),
        McpCommand::Remove { name } => remove(&name),
    };
    match result {
        Ok(()) => 0,
        Err(message) => {
            eprintln!("Error: {message}");
            1
        }
    }
}

fn load_servers(raw: &[String]) -> Result<McpServers, String> {
    let loaded = load_config(ConfigOverrides {
        raw_overrides: raw.to_vec(),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    for warning in &loaded.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(loaded.config.mcp_servers)
}

fn server_json(name: &str, config: &McpServerConfig) -> Value {
    let transport = match &config.transport {
        McpServerTransportConfig::Stdio {
            command,
            args,
            env,
            env_vars,
            cwd,
        } => json!({
            "type": "stdio",
            "command": command,
            "args": args,
            "env": env,
            "env_vars": env_vars,
            "cwd": cwd,
        }),
        McpServerTransportConfig::StreamableHttp {
            url,
            bearer_token_env_var,
            http_headers,
            env_http_headers,
        } => json!({
            "type": "streamable_http",
            "url": url,
            "bearer_token_env_var": bearer_token_env_var,
            "http_headers": http_headers,
            "env_http_headers": env_http_headers,
        }),
    };
    json!({
        "name": name,
        "enabled": config.enabled,
        "transport": transport,
        "startup_timeout_sec": config.startup_timeout().as_secs_f64(),
        "tool_timeout_sec": config.tool_timeout().as_secs_f64(),
        "enabled_tools": config.enabled_tools,
        "disabled_tools": config.disabled_tools,
    })
}

/// `command args…` or the URL, for the text listing. Environment values are masked.
fn target(config: &McpServerConfig) -> (String, String) {
    match &config.transport {
        McpServerTransportConfig::Stdio {
            command, args, env, ..
        } => {
            let mut line = command.clone();
            for arg in args {
                line.push(' ');
                line.push_str(arg);
            }
            let env = env
                .keys()
                .map(|k| format!("{k}=*****"))
                .collect::<Vec<_>>()
                .join(" ");
            (line, if env.is_empty() { "-".into() } else { env })
        }
        McpServerTransportConfig::StreamableHttp {
            url,
            bearer_token_env_var,
            ..
        } => (
            url.clone(),
            bearer_token_env_var
                .as_ref()
                .map(|v| format!("bearer token from ${v}"))
                .unwrap_or_else(|| "-".into()),
        ),
    }
}

fn list(raw: &[String], as_json: bool) -> Result<(), String> {
    let servers = load_servers(raw)?;
    if as_json {
        let all: Vec<Value> = servers.iter().map(|(n, c)| server_json(n, c)).collect();
        println!("{}", Value::Array(all));
        return Ok(());
    }
    if servers.is_empty() {
        println!(
            "No MCP servers configured. Add one with `quest mcp add NAME -- COMMAND [ARGS]...`."
        );
        return Ok(());
    }
    let rows: Vec<[String; 5]> = servers
        .iter()
        .map(|(name, config)| {
            let (target, extra) = target(config);
            [
                name.clone(),
                config.transport.kind().to_string(),
                if config.enabled { "yes" } else { "no" }.to_string(),
                target,
                extra,
            ]
        })
        .collect();
    let header = [
        "NAME",
        "TRANSPORT",
        "ENABLED",
        "COMMAND / URL",
        "ENV / AUTH",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        println!("{}", line.trim_end());
    }
    Ok(())
}

fn get(raw: &[String], name: &str, as_json: bool) -> Result<(), String> {
    let servers = load_servers(raw)?;
    let config = servers
        .get(name)
        .ok_or_else(|| format!("no MCP server named `{name}` in the configuration"))?;
    let value = server_json(name, config);
    if as_json {
        println!("{value}");
    } else {
        let (target, extra) = target(config);
        println!("{name}");
        println!("  transport: {}", config.transport.kind());
        println!("  enabled: {}", config.enabled);
        println!("  command / url: {target}");
        println!("  env / auth: {extra}");
        println!(
            "  startup_timeout_sec: {}",
            config.startup_timeout().as_secs_f64()
        );
        println!(
            "  tool_timeout_sec: {}",
            config.tool_timeout().as_secs_f64()
        );
        if let Some(tools) = &config.enabled_tools {
            println!("  enabled_tools: {}", tools.join(", "));
        }
        if !config.disabled_tools.is_empty() {
            println!("  disabled_tools: {}", config.disabled_tools.join(", "));
        }
    }
    Ok(())
}

fn config_path() -> PathBuf {
    quest_core::config::default_home().join("config.toml")
}

fn read_document(path: &Path) -> Result<DocumentMut, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<DocumentMut>()
            .map_err(|e| format!("{}: {}", path.display(), e.to_string().trim_end())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DocumentMut::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Checks the edited `[mcp_servers]` with the same rules as loading, then writes the file
/// through a temporary file in the same directory (same permissions) and a rename.
fn write_document(path: &Path, doc: &DocumentMut) -> Result<(), String> {
    let text = doc.to_string();
    let table: toml::Table = toml::from_str(&text).map_err(|e| e.to_string())?;
    if let Some(servers) = table.get("mcp_servers") {
        servers
            .clone()
            .try_into::<McpServers>()
            .map_err(|e| format!("the change would make `mcp_servers` invalid: {e}"))?;
    }
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .map_err(|e| format!("cannot write in {}: {e}", dir.display()))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = file.as_file().set_permissions(meta.permissions());
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    file.persist(path)
        .map_err(|e| format!("cannot replace {}: {}", path.display(), e.error))?;
    Ok(())
}

fn key_value_pairs(list: &[String], flag: &str) -> Result<BTreeMap<String, String>, String> {
    list.iter()
        .map(|pair| match pair.split_once('=') {
            Some((key, val)) if !key.is_empty() => Ok((key.to_string(), val.to_string())),
            _ => Err(format!("{flag} expects KEY=VALUE, got {pair:?}")),
        })
        .collect()
}

fn inline(map: &BTreeMap<String, String>) -> Item {
    let mut table = InlineTable::new();
    for (k, v) in map {
        table.insert(k, v.as_str().into());
    }
    value(table)
}

fn add(args: AddArgs) -> Result<(), String> {
    quest_mcp::config::validate_server_name(&args.name)?;
    let mut table = Table::new();
    match (&args.url, args.command.split_first()) {
        (Some(url), _) => {
            table.insert("url", value(url.as_str()));
            if let Some(var) = &args.bearer_token_env_var {
                table.insert("bearer_token_env_var", value(var.as_str()));
            }
            let headers = key_value_pairs(&args.headers, "--header")?;
            if !headers.is_empty() {
                table.insert("http_headers", inline(&headers));
            }
        }
        (None, Some((command, rest))) => {
            table.insert("command", value(command.as_str()));
            if !rest.is_empty() {
                let mut array = Array::new();
                for arg in rest {
                    array.push(arg.as_str());
                }
                table.insert("args", value(array));
            }
            let env = key_value_pairs(&args.env, "--env")?;
            if !env.is_empty() {
                table.insert("env", inline(&env));
            }
        }
        (None, None) => {
            return Err(
                "give the server's command after `--` (stdio) or `--url URL` (streamable HTTP)"
                    .to_string(),
            );
        }
    }
    for (key, secs) in [
        ("startup_timeout_sec", args.startup_timeout_sec),
        ("tool_timeout_sec", args.tool_timeout_sec),
    ] {
        match secs {
            // Whole seconds are written as integers, as a person would.
            Some(s) if s.fract() == 0.0 && (1.0..=1e9).contains(&s) => {
                table.insert(key, value(s as i64));
            }
            Some(s) => {
                table.insert(key, value(s));
            }
            None => {}
        }
    }
    let path = config_path();
    let mut doc = read_document(&path)?;
    let servers = doc
        .entry("mcp_servers")
        .or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        })
        .as_table_mut()
        .ok_or_else(|| format!("{}: `mcp_servers` is not a table", path.display()))?;
    let replaced = servers.contains_key(&args.name);
    servers.insert(&args.name, Item::Table(table));
    write_document(&path, &doc)?;
    println!(
        "{} MCP server `{}` in {}",
        if replaced { "Updated" } else { "Added" },
        args.name,
        path.display()
    );
    Ok(())
}

fn remove(name: &str) -> Result<(), String> {
    let path = config_path();
    let mut doc = read_document(&path)?;
    let removed = doc
        .get_mut("mcp_servers")
        .and_then(Item::as_table_like_mut)
        .and_then(|servers| servers.remove(name))
        .is_some();
    if !removed {
        return Err(format!(
            "no MCP server named `{name}` in {}",
            path.display()
        ));
    }
    write_document(&path, &doc)?;
    println!("Removed MCP server `{name}` from {}", path.display());
    Ok(())
}
