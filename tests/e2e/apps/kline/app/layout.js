import './globals.css';

export const metadata = { title: 'Kline service (gatehouse e2e)' };

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>
        <header className="bar">Kline service — behind gatehouse</header>
        <main>{children}</main>
      </body>
    </html>
  );
}
