"""4D-Rotor Gaussian splatting (``4d-rotor-gs``): rotors, time slicing, 4D densification, regularisers, model.

Modules: :mod:`.rotor` (8-component rotor -> 4x4 matrix), :mod:`.slicing` (conditioning 4D Gaussians on a time),
:mod:`.strategy` (4D densification / pruning), :mod:`.losses` (entropy and 4D consistency), :mod:`.model`.
The model module imports nerfstudio's model stack; import it directly (``ng_methods.rotor4d.model``).
"""
