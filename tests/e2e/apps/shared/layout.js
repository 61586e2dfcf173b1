import './base.css';

// Root layout of an app: a header bar naming it, then the page.
export default function RootLayout({ name, children }) {
  return (
    <html lang="en">
      <body>
        <header className="bar">{name} — behind gatehouse</header>
        <main>{children}</main>
      </body>
    </html>
  );
}
