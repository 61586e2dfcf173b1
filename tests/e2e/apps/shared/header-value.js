import { headers } from 'next/headers';

// One request header as the app received it from the gateway, or "(none)".
export default async function HeaderValue({ name, id, as: Tag = 'strong' }) {
  const h = await headers();
  return <Tag id={id}>{h.get(name) ?? '(none)'}</Tag>;
}
