/// The `flake.nix` template used in flake mode (`flake: true` in the inventory): one NixOS configuration,
/// `nixosConfigurations."<node>"`, built from the rendered `./configuration.nix` (which imports `./nk3-agent.nix`, so
/// the agent stays enabled) with nixpkgs from the `nixos_branch` of `nix_channel`, pinned by `flake.lock`.
///
/// Template scope: the same as configuration.nix's (`BundleRenderer`), plus `flake`: `flake.attribute` (the node's
/// name, the attribute the agent builds), `flake.nixpkgs_url` (`github:NixOS/nixpkgs/<branch>`, the branch being the
/// last part of `nix_channel`, e.g. `nixos-24.05`) and `flake.system` (the `system` hostvar, default
/// `x86_64-linux`). It ends with two newlines: Jinja2 drops one, the file keeps one.
public enum DefaultFlakeTemplate {
    /// The template text (Jinja2 dialect, see `JinjaTemplate`).
    public static let source = #"""
# Rendered by nk3 for {{ node.name }} from the cluster inventory; flake.lock pins nixpkgs.
# Changes made on the node are replaced by the next rollout: edit the template instead.
{
  description = "NixOS configuration of {{ node.name }}, rendered by nk3";

  inputs.nixpkgs.url = "{{ flake.nixpkgs_url }}";

  outputs = { self, nixpkgs }: {
    nixosConfigurations."{{ flake.attribute }}" = nixpkgs.lib.nixosSystem {
      modules = [
        ./configuration.nix
        { nixpkgs.hostPlatform = nixpkgs.lib.mkDefault "{{ flake.system }}"; }
      ];
    };
  };
}


"""#
}
