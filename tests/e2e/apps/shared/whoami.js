// JSON view of what the gateway forwarded: the verified identity headers and
// every header whose name looks like an identity header (a forged copy that
// slipped through would show up in `identity_header_names`).
export function whoami(app) {
  return async function GET(request) {
    const h = request.headers;
    return Response.json({
      app,
      user_id: h.get('x-user-id'),
      scopes: h.get('x-user-scopes'),
      roles: h.get('x-user-roles'),
      request_id: h.get('x-request-id'),
      forwarded_for: h.get('x-forwarded-for'),
      forwarded_host: h.get('x-forwarded-host'),
      identity_header_names: [...h.keys()].filter((k) => /^x[-_]user[-_]/i.test(k)),
      has_cookie: h.has('cookie'),
    });
  };
}
