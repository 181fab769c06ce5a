import { mount } from 'svelte';
import App from './App.svelte';
import { installTrustedTypesPolicy } from './trusted-types.ts';
import './app.css';

// Before anything registers the service worker (App does, through sw-register.ts).
installTrustedTypesPolicy();

const target = document.getElementById('app');
if (!target) throw new Error('#app missing from index.html');

export default mount(App, { target });
