/** The dashboard's entry: one query client (its cache is per tab), the sign-in gate, the app. */
import { MutationCache, QueryCache, QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode, useEffect } from "react";
import { createRoot } from "react-dom/client";
import { Code, codeOf } from "./api";
import { App } from "./app";
import { SignedIn, useCaller } from "./session";
import "./style.css";

/** A key revoked while the page is open: the next call answers unauthenticated, and the form comes back. */
let onRefused: () => void = () => {};
const refused = (err: unknown) => {
  if (codeOf(err) === Code.Unauthenticated) onRefused();
};

const queryClient = new QueryClient({
  queryCache: new QueryCache({ onError: refused }),
  mutationCache: new MutationCache({ onError: refused }),
  defaultOptions: {
    queries: {
      retry: (count, err) => count < 2 && codeOf(err) !== Code.Unauthenticated && codeOf(err) !== Code.PermissionDenied && codeOf(err) !== Code.NotFound,
      refetchOnWindowFocus: false,
    },
  },
});

function RefusalWatch() {
  const { signOut } = useCaller();
  useEffect(() => {
    onRefused = () => {
      queryClient.clear();
      signOut("the server refused this key (revoked?): sign in again");
    };
    return () => {
      onRefused = () => {};
    };
  }, [signOut]);
  return null;
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <SignedIn>
        <RefusalWatch />
        <App />
      </SignedIn>
    </QueryClientProvider>
  </StrictMode>,
);
