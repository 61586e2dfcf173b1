// What a gateway with an `oauth:` block forwards besides the identity: the
// access token (Authorization: Bearer) and the names (not values) of the
// cookies that reached the app. Test app only: it echoes the token, which
// run.mjs introspects at the authorization server.
export const dynamic = 'force-dynamic';

export function GET(request) {
  const h = request.headers;
  const cookies = (h.get('cookie') ?? '').split(/;\s*/).filter(Boolean);
  return Response.json({
    user_id: h.get('x-user-id'),
    authorization: h.get('authorization'),
    cookie_names: cookies.map((c) => c.split('=')[0]),
  });
}
