import RootLayout from '../../shared/layout.js';
import './globals.css';

export const metadata = { title: 'Kline service (gatehouse e2e)' };

export default function Layout({ children }) {
  return <RootLayout name="Kline service">{children}</RootLayout>;
}
