// The TypeScript SDK peer of mcp.http_stateless.c32 (shared/BENCHMARKS.md):
// the v2 SDK (@modelcontextprotocol/server), which speaks the 2026-07-28
// revision (no session; version and capabilities in each request's _meta),
// served the way its documentation shows on plain node:http: a per-request
// McpServer factory behind createMcpHandler, mounted with toNodeHandler from
// @modelcontextprotocol/node behind the localhost Host/Origin guards.
// JSON responses are pinned (responseMode 'json'), as for the other HTTP rows.
// The v2 packages need Node.js 20 or later.
//
// usage: node stateless.mjs --http HOST:PORT
import { createServer } from 'node:http';
import { createMcpHandler, McpServer } from '@modelcontextprotocol/server';
import { localhostHostValidation, localhostOriginValidation, toNodeHandler } from '@modelcontextprotocol/node';
import { announce, exitOnTerm, parseArgs, registerTools } from './tools.mjs';

const args = parseArgs(process.argv.slice(2), false);
exitOnTerm();

const handler = createMcpHandler(
    () => {
        const server = new McpServer({ name: 'squirrel-peer-mcp-ts', version: '0.1.0' });
        registerTools(server);
        return server;
    },
    { responseMode: 'json' }
);
const nodeHandler = toNodeHandler(handler);
const validateHost = localhostHostValidation();
const validateOrigin = localhostOriginValidation();

const httpServer = createServer((req, res) => {
    if (!validateHost(req, res) || !validateOrigin(req, res)) return;
    void nodeHandler(req, res);
});
httpServer.listen(args.port, args.host, () => announce(httpServer, args.host));
