// Vite: `npm run build` writes dist/ (what `parlor serve --static dist` serves);
// `npm run dev` serves the app with hot reload and proxies the Socket.IO path (WebSocket
// upgrades included) and the HTTP API to a running parlor (PARLOR_URL, default :3000).
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const target = process.env.PARLOR_URL || 'http://127.0.0.1:3000';

// parlor refuses WebSocket upgrades (and answers polling without CORS headers) from an
// origin it does not know: through the proxy the page's origin is Vite's, so the proxy
// presents the request as parlor's own.
const sameOrigin = (proxy) => {
  const rewrite = (proxyReq) => {
    if (proxyReq.getHeader('origin')) proxyReq.setHeader('origin', target);
  };
  proxy.on('proxyReq', rewrite);
  proxy.on('proxyReqWs', rewrite);
};

export default defineConfig({
  plugins: [react()],
  build: { outDir: 'dist', sourcemap: true },
  server: {
    proxy: {
      '/socket.io': { target, ws: true, changeOrigin: true, configure: sameOrigin },
      '/api': { target, changeOrigin: true, configure: sameOrigin },
    },
  },
});
