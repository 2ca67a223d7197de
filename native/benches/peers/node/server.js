// The Node socket.io 4.8 peer of parlor's bench_server (bench/examples/bench_server.rs) for
// `parlor bench`: namespace `/` only, socket.io's default options, the same three handlers:
// - `join` (room, ack): joins the room named by the argument, then acks with no arguments;
// - `message` ({room, payload}): emits `message` with `payload` to the room, sender included;
// - `echo` (arg, ack): acks with the same argument.
//
// Run: `node server.js --listen 127.0.0.1:3000` (default 127.0.0.1:$PORT, else :3000); it
// prints `socket.io listening on ADDR` once it accepts connections.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

function listenAddr(argv) {
  let listen = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--listen") listen = argv[++i];
    else if (a.startsWith("--listen=")) listen = a.slice("--listen=".length);
    else if (a === "-h" || a === "--help") {
      console.log("usage: node server.js [--listen ADDR]   (default 127.0.0.1:$PORT, else :3000)");
      process.exit(0);
    } else {
      console.error(`unknown argument ${a}`);
      process.exit(2);
    }
  }
  listen = listen || `127.0.0.1:${process.env.PORT || 3000}`;
  const colon = listen.lastIndexOf(":");
  return { host: listen.slice(0, colon).replace(/^\[|\]$/g, ""), port: Number(listen.slice(colon + 1)) };
}

const { host, port } = listenAddr(process.argv.slice(2));
const httpServer = http.createServer();
const io = new Server(httpServer); // path /socket.io/, defaults otherwise

io.on("connection", (socket) => {
  socket.on("join", (room, ack) => {
    socket.join(room);
    if (typeof ack === "function") ack();
  });
  socket.on("message", (m) => {
    if (!m || typeof m.room !== "string") return;
    // io.to (not socket.to): the sender is in the room and gets its own message too.
    io.to(m.room).emit("message", m.payload);
  });
  socket.on("echo", (arg, ack) => {
    if (typeof ack === "function") ack(arg);
  });
});

httpServer.listen(port, host, () => {
  const a = httpServer.address();
  console.log(`socket.io listening on ${a.family === "IPv6" ? `[${a.address}]` : a.address}:${a.port}`);
});

for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));
