//! The hyper peer of the mcp.* benchmarks (shared/BENCHMARKS.md): a bare
//! JSON-RPC-over-HTTP echo on tokio (2 worker threads) + hyper + serde_json,
//! with no MCP logic. It is the bound for a Rust user who writes the wire
//! format by hand: it answers `initialize` with a minimal InitializeResult
//! (and no session), any notification with 202, and `tools/call` of `echo`
//! or `echo_validated` with the text it was given (no validation), in either
//! era (it ignores `_meta` and the MCP headers).
//!
//! usage: squirrel-peer-hyper --http HOST:PORT   (port 0: any free port)
//!
//! Once it accepts connections it prints
//! `hyper: listening on http://HOST:PORT/mcp` on stderr.

use std::convert::Infallible;
use std::net::SocketAddr;

use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::service::{make_service_fn, service_fn};
use hyper::{Body, Method, Request, Response, Server, StatusCode};
use serde_json::{json, Value};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: SocketAddr = match args.as_slice() {
        [flag, addr] if flag == "--http" => addr.parse().unwrap_or_else(|_| usage()),
        _ => usage(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let make_svc = make_service_fn(|_conn| async { Ok::<_, Infallible>(service_fn(handle)) });
        let server = Server::try_bind(&addr)
            .unwrap_or_else(|e| {
                eprintln!("hyper: cannot listen on {addr}: {e}");
                std::process::exit(1)
            })
            .tcp_nodelay(true)
            .serve(make_svc);
        eprintln!("hyper: listening on http://{}/mcp", server.local_addr());
        if let Err(e) = server.await {
            eprintln!("hyper: server error: {e}");
            std::process::exit(1);
        }
    });
}

fn usage() -> ! {
    eprintln!("usage: squirrel-peer-hyper --http HOST:PORT");
    std::process::exit(2)
}

async fn handle(req: Request<Body>) -> Result<Response<Body>, hyper::Error> {
    if req.uri().path() != "/mcp" {
        return Ok(status(StatusCode::NOT_FOUND));
    }
    if req.method() != Method::POST {
        return Ok(status(StatusCode::METHOD_NOT_ALLOWED));
    }
    let body = hyper::body::to_bytes(req.into_body()).await?;
    let msg: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return Ok(json_response(StatusCode::BAD_REQUEST, &error(&Value::Null, -32700, "Parse error"))),
    };
    let method = msg.get("method").and_then(Value::as_str);
    let id = match msg.get("id") {
        Some(id) => id,
        None => return Ok(status(StatusCode::ACCEPTED)), // a notification
    };
    let reply = match method {
        Some("initialize") => {
            let version = msg
                .pointer("/params/protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("2025-11-25");
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "squirrel-peer-hyper", "version": "0.1.0"}
                }
            })
        }
        Some("tools/call") => match msg.pointer("/params/arguments/text").and_then(Value::as_str) {
            Some(text) => json!({
                "jsonrpc": "2.0",
                "id": id,
                "result": {"content": [{"type": "text", "text": text}]}
            }),
            None => error(id, -32602, "Invalid params"),
        },
        _ => error(id, -32601, "Method not found"),
    };
    Ok(json_response(StatusCode::OK, &reply))
}

fn error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::from(serde_json::to_vec(v).expect("JSON")));
    *resp.status_mut() = code;
    resp.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn status(code: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = code;
    resp
}
