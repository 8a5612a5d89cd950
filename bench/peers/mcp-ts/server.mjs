// The TypeScript SDK peer of the mcp.* benchmarks (shared/BENCHMARKS.md),
// on the v1 SDK (@modelcontextprotocol/sdk, protocol 2025-11-25), written
// the way the SDK documents it: McpServer + registerTool; stdio through
// StdioServerTransport; Streamable HTTP through StreamableHTTPServerTransport
// on the SDK's Express app (createMcpExpressApp: JSON body parsing and Host
// validation), with JSON responses enabled and one transport + McpServer per
// session, keyed by the session id the transport generates.
//
// usage: node server.mjs --stdio | --http HOST:PORT
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { announce, exitOnTerm, parseArgs, registerTools } from './tools.mjs';

function newServer() {
    const server = new McpServer({ name: 'squirrel-peer-mcp-ts', version: '0.1.0' });
    registerTools(server);
    return server;
}

const args = parseArgs(process.argv.slice(2), true);
exitOnTerm();

if (args.stdio) {
    await newServer().connect(new StdioServerTransport());
} else {
    const transports = new Map(); // session id -> its transport

    const app = createMcpExpressApp({ host: args.host });
    app.post('/mcp', async (req, res) => {
        try {
            const sessionId = req.headers['mcp-session-id'];
            let transport = sessionId === undefined ? undefined : transports.get(sessionId);
            if (transport === undefined) {
                if (sessionId !== undefined || !isInitializeRequest(req.body)) {
                    res.status(sessionId === undefined ? 400 : 404).json({
                        jsonrpc: '2.0',
                        error: { code: -32000, message: sessionId === undefined ? 'No session id' : 'Session not found' },
                        id: null
                    });
                    return;
                }
                transport = new StreamableHTTPServerTransport({
                    sessionIdGenerator: () => randomUUID(),
                    enableJsonResponse: true,
                    onsessioninitialized: (id) => transports.set(id, transport)
                });
                transport.onclose = () => {
                    if (transport.sessionId !== undefined) transports.delete(transport.sessionId);
                };
                await newServer().connect(transport);
            }
            await transport.handleRequest(req, res, req.body);
        } catch (err) {
            process.stderr.write(`ts-sdk: ${err?.stack ?? err}\n`);
            if (!res.headersSent) {
                res.status(500).json({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal error' }, id: null });
            }
        }
    });
    // Session termination, as the transport documents it.
    app.delete('/mcp', async (req, res) => {
        const transport = transports.get(req.headers['mcp-session-id']);
        if (transport === undefined) {
            res.status(404).end();
            return;
        }
        await transport.handleRequest(req, res);
    });

    const httpServer = app.listen(args.port, args.host, () => announce(httpServer, args.host));
}
