import './globals.css';

export const metadata = { title: 'Admin portal (gatehouse e2e)' };

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>
        <header className="bar">Admin portal — behind gatehouse</header>
        <main>{children}</main>
      </body>
    </html>
  );
}
