//! net.echo: an echo server and 100 clients in the same process, over
//! 127.0.0.1, with TCP_NODELAY on both sides.
//!
//! The clock covers the round trips only: the 100 connections are made
//! first, then every client is started.

use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::{RunResult, Summary, Workload};

const CONNS: usize = 100;
const ROUNDS: usize = 2_000;
const MSG: usize = 64;

pub fn workloads() -> Vec<Workload> {
    vec![Workload::new("net.echo", (CONNS * ROUNDS) as u64, echo).extras(echo_extras)]
}

/// The server side of one connection: write back whatever arrives, until
/// EOF. Returns the number of bytes echoed.
async fn serve(mut stream: TcpStream) -> usize {
    let mut buf = vec![0u8; 4096];
    let mut echoed = 0;
    loop {
        let n = stream.read(&mut buf).await.unwrap_or_else(|e| panic!("server read: {e}"));
        if n == 0 {
            return echoed;
        }
        stream.write_all(&buf[..n]).await.unwrap_or_else(|e| panic!("server write: {e}"));
        echoed += n;
    }
}

/// Message `round` of client `id`: distinct for every client and round, so a
/// misrouted or stale echo is caught.
fn fill_msg(msg: &mut [u8; MSG], id: usize, round: usize) {
    msg[0..4].copy_from_slice(&(id as u32).to_le_bytes());
    msg[4..8].copy_from_slice(&(round as u32).to_le_bytes());
    for (j, b) in msg.iter_mut().enumerate().skip(8) {
        *b = (id * 31 + round * 7 + j) as u8;
    }
}

/// One client: 2,000 round trips of a 64-byte message, each echo checked
/// byte for byte. Returns the number of round trips.
async fn client(mut stream: TcpStream, id: usize) -> usize {
    let mut msg = [0u8; MSG];
    let mut got = [0u8; MSG];
    for round in 0..ROUNDS {
        fill_msg(&mut msg, id, round);
        stream.write_all(&msg).await.unwrap_or_else(|e| panic!("client {id} round {round}: write: {e}"));
        stream.read_exact(&mut got).await.unwrap_or_else(|e| panic!("client {id} round {round}: read: {e}"));
        check!(got == msg, "client {id} round {round}: echo differs from message");
    }
    ROUNDS
}

async fn echo() -> RunResult {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let addr = listener.local_addr().unwrap();

    // The acceptor takes exactly CONNS connections and starts a server task
    // for each.
    let acceptor: JoinHandle<Vec<JoinHandle<usize>>> = tokio::spawn(async move {
        let mut servers = Vec::with_capacity(CONNS);
        for _ in 0..CONNS {
            let (stream, _) = listener.accept().await.unwrap_or_else(|e| panic!("accept: {e}"));
            stream.set_nodelay(true).unwrap_or_else(|e| panic!("server TCP_NODELAY: {e}"));
            servers.push(tokio::spawn(serve(stream)));
        }
        servers
    });

    let mut conns = Vec::with_capacity(CONNS);
    for _ in 0..CONNS {
        let stream = TcpStream::connect(addr).await.unwrap_or_else(|e| panic!("connect: {e}"));
        stream.set_nodelay(true).unwrap_or_else(|e| panic!("client TCP_NODELAY: {e}"));
        conns.push(stream);
    }
    let servers = acceptor.await.unwrap();

    let t0 = Instant::now();
    let clients: Vec<JoinHandle<usize>> =
        conns.into_iter().enumerate().map(|(id, stream)| tokio::spawn(client(stream, id))).collect();
    let mut round_trips = 0;
    for c in clients {
        round_trips += c.await.unwrap();
    }
    let elapsed = t0.elapsed();

    // The clients have closed their connections: every server sees EOF.
    let mut echoed = 0;
    for s in servers {
        echoed += s.await.unwrap();
    }
    check!(round_trips == CONNS * ROUNDS, "{round_trips} round trips, want {}", CONNS * ROUNDS);
    check!(echoed == CONNS * ROUNDS * MSG, "servers echoed {echoed} bytes, want {}", CONNS * ROUNDS * MSG);
    RunResult::timed(elapsed)
}

fn echo_extras(s: &Summary) -> Vec<(&'static str, String)> {
    vec![("rtt_per_sec", format!("{:.0}", s.ops as f64 / (s.ms / 1e3)))]
}
