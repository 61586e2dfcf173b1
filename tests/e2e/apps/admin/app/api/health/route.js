// Probed directly by the gateway's active health check.
export const dynamic = 'force-dynamic';

export function GET() {
  return Response.json({ status: 'ok', app: 'admin' });
}
