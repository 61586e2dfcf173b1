import RootLayout from '../../shared/layout.js';
import './globals.css';

export const metadata = { title: 'Admin portal (gatehouse e2e)' };

export default function Layout({ children }) {
  return <RootLayout name="Admin portal">{children}</RootLayout>;
}
